import { IdAttributePlugin, InputPathToUrlTransformPlugin, HtmlBasePlugin } from "@11ty/eleventy";
export default async function(eleventyConfig) {
	eleventyConfig.addPassthroughCopy({ "./public/": "/" });
};
export const config = { templateFormats: ["md", "njk", "html", "liquid", "11ty.js"], dir: { input: "content", includes: "../_includes", data: "../_data", output: "_site" } };
