"""``mimirctl acp``: an ACP v1 agent on stdin/stdout for an editor, relaying to mimird.

Blocking, without trio: the editor's side is read with :mod:`mimird.wire.lines` and
spoken with :class:`mimird.wire.jsonrpc.JsonRpcPeer`; mimird is reached with
:class:`mimirctl.client.Client`, one connection for calls and one per attached
session for its events. The modules, by concern:

- :mod:`mimirctl.acp.loop`: the editor-side loop (stdin, stdout, the sockets, one
  ``selectors`` wait), the bridge's state;
- :mod:`mimirctl.acp.handlers`: the ACP methods, each relayed to mimird;
- :mod:`mimirctl.acp.relay`: a session's events followed, turned into
  ``session/update`` notifications, and the end of a prompt;
- :mod:`mimirctl.acp.permissions`: permission requests asked of the editor, first
  answer wins;
- :mod:`mimirctl.acp.replay` (the editor-plugin kit's): journal events → ACP updates
  for ``session/load``; :mod:`mimirctl.acp.delegate` ([editorfs]): the agent's file
  and terminal requests answered through the editor.
"""
