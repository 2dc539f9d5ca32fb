"""HTTP: routes, sockets, the web config and its guards, the JSON API and the pages."""
