"""What the tests share: daemons in temporary directories, clients, git repositories,
the scripted ACP agent and the fake LLM server."""
