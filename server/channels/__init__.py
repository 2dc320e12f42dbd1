"""Helpdesk channels (Chatwoot, Zendesk Sunshine): verify -> dedupe -> queue -> reply."""
