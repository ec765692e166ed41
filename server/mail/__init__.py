"""Mail: message templates, SMTP delivery, and the outbox sender."""
