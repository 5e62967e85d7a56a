"""Call-centre service for property-management hotlines."""
