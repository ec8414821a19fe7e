"""The web edge: the ASGI app, the forward-auth endpoints, the pages, the reset gate.

Handlers translate: they read a request through the one door (``parts.door``), ask the one
decision (``parts.decision``), and turn the verdict into a response in the proxy's dialect or
a page. The web layer may import everything below it (``sidecar.wiring`` and down); nothing
imports it but the command line and the demo.
"""
