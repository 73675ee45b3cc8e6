"""The default theme: these templates ship inside the package as `digest.default_theme`.

Nothing here is imported for code; the file only makes the folder a package, so an editable install
finds the theme where a wheel install does. A `[templates] path` folder overrides it file by file.
"""
