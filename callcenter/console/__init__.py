"""The agent's console: live state and screen pop from the call distributor,
wrap-up with a disposition and the call's ticket.

``model.py`` is pure (dispositions, the ticket the wrap-up form starts from,
checking what the agent sends); ``store.py`` is the SQL; ``http.py`` the routes.
"""
