"""Sign-in, roles, sessions, CSRF and the audit log of the web.

``model.py`` is pure (roles, who is signed in, what a route allows, login
throttling rules); ``passwords.py`` hashes; ``store.py`` is the SQL;
``sessions.py`` keeps sessions server side; ``http.py`` is the middleware and
the sign-in routes.
"""
