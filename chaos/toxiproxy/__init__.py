"""A server for the Toxiproxy 2.x HTTP API (port 8474): TCP proxies with toxics, on asyncio.

Shopify's Toxiproxy is a Go program that no package registry here carries, so we serve its API:
its own clients (`toxiproxy-python`, `chaostoolkit-toxiproxy`, `toxiproxy-cli` over HTTP) drive
this server unchanged, and code written against this server drives a real Toxiproxy.

    toxics.py   pure: toxic types and their attributes, JSON parsing and validation, API errors
    link.py     one direction of one proxied connection: reader -> toxics -> writer
    proxy.py    Proxy (listener + connections) and the collection of proxies
    api.py      the HTTP routes (agent.httpd.web on agent.httpd.h1)
    __main__.py `pyconsul-chaos toxiproxy` / `python -m pyconsul.chaos.toxiproxy`
"""
