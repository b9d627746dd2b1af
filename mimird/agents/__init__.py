"""Agents: presets and the command resolver, and one host per running agent
(supervision, the ACP handshake, turns, permissions, the client methods an agent
calls, its updates turned into events)."""
