"""Tenancy: domains, projects, users, keypairs, resource policies and groups, and quota usage."""
