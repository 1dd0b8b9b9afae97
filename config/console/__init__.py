"""The operators' console: the Django admin site, scoped to the staff user's tenant."""
