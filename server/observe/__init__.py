"""What operators see of a running server: metrics, structured logs, traces and the request
context they share. Called from the edges (web/, cli/, the background tasks); storage/
never imports it."""
