"""The interactive sign-in flow: login, second factor, consent, and the pages each step leads to."""
