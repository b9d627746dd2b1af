"""Agents: presets and the one command resolver (``presets``), and one host per
running agent, in parts that each receive the host's ``Recorder``:

- ``manager``: the owner of every host, and what the API asks of agents;
- ``host``: supervision and lifecycle (``ProcessState``, ``change_state``);
- ``restart``: the pure restart policy (``next_delay``);
- ``handshake``: ``initialize``, then ``session/load`` or ``session/new``;
- ``turns``: prompts, cancels, and the end of every turn;
- ``permissions``: the one registry of pending permission requests;
- ``client_methods``: what the agent may ask (``fs/*``, ``terminal/*``), by table;
- ``updates``: ``session/update`` turned into events;
- ``acp``: the ACP connection, a trio wrapper around ``mimird.wire``'s sans-IO cores;
- ``terminals``, ``stderr_log``: commands the agent runs, and its stderr.
"""
