"""HTTP: the aiohttp server, the JSON API, bearer auth and the Prometheus exposition."""
