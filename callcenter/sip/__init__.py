"""Agent SIP accounts: pure account logic (accounts.py), pushing them to Asterisk (provision.py)."""
