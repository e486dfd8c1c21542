"""Inventory, device check, deploy, remote jobs, fleets; targets/ move files and run commands."""
