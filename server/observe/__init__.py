"""What operators see of a running server: metrics, structured logs, traces and the request
context they share. Any layer above storage/ reports to it (a sign-in counted where it is
decided, a request's client named where it is authenticated); storage/ never imports it."""
