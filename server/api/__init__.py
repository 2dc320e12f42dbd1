"""HTTP API blueprints (chat, rasa, conversations, health), request schemas and guards."""
