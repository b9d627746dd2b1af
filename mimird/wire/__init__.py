"""Wire types shared by mimird and its clients.

``mimird.wire.codes`` (protocol version, error codes) needs only the standard
library; the other modules import nothing but msgspec. None of them imports the
daemon, so clients such as ``mimirctl`` can use exactly what the server
validates. This ``__init__`` imports nothing, so importing one module costs
only that module.
"""
