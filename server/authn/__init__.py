"""Authentication of people: browser sessions, authentication levels, CSRF protection."""
