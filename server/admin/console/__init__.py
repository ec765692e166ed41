"""The admin console's handlers (``/admin``): what each page reads and what each form does.

They see no HTTP: ``web/admin_console.py`` checks the CSRF token and the administrator's
access (:mod:`.access`), builds a :class:`~.base.Visit`, and turns the :data:`~.base.Answer`
(a page to show, or a place to go) or the typed error raised into the response. Every
change goes through the service functions the CLI and the admin API use, in one
transaction, with the audit rows naming the administrator as ``user:<sub>``.
"""
