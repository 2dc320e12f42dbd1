"""Helpdesk channels: Chatwoot Agent Bot and Zendesk Sunshine Conversations.

Each channel does the same five steps (``../shared/DESIGN.md``, "Channels"): **verify** a delivery
(HMAC signature or shared secret, constant time, replay window) → **deduplicate** on the delivery /
event id → **queue** the message and acknowledge at once → a **worker** answers the conversation's
pending messages as one turn of the same pipeline and history as ``/v1/chat`` and posts the reply
through the helpdesk's API, exactly once → **hand off** through the helpdesk's own mechanism and
stay silent until the conversation is handed back.

Modules: ``config.py`` (the ``channels`` setting), ``common.py`` (the extension, shared webhook
steps), ``setup.py`` (``init_channels``: blueprints, queue, worker), ``chatwoot.py`` /
``sunshine.py`` (webhooks and API adapters), ``state.py`` (Redis keys), ``queue.py`` (Dramatiq), ``jobs.py`` (the turn job), ``http.py`` (API calls and their failure
classes). Set-up guides: ``docs/integrations/``.
"""
