"""Spend control: prices per action (``prices``), dry-run estimates (``estimate``) and
reservations against caps shared by the fleet (``guard``, over ``scripts/spend.lua``).
"""
