const { withContentlayer } = require('next-contentlayer2')
module.exports = () => withContentlayer({ reactStrictMode: true, pageExtensions: ['ts', 'tsx', 'js', 'jsx', 'md', 'mdx'] })
