"""``mimirctl acp``: Mimir as an ACP agent on stdio, for editors."""
