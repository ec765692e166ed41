"""Administration over the network: the admin API's resources (``/admin/api/v1``) and the
console's pages (``/admin``), both over the same services as the ``ostiary`` CLI."""
