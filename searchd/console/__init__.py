"""The browser console's static files (``static/``): HTML, CSS and JavaScript modules, served by searchd.server.console.

No build step and no third-party code: the files are served as they are written here.
"""
