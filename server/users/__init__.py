"""Users: accounts and passwords."""
