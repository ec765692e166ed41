"""HTTP: endpoints, middleware and error pages. No SQL and no grant logic here."""
