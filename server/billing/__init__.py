"""Billing: tariffs, invoices and the billing service (usage, invoices, capacity
reports)."""
