"""Hostile and broken input: files and settings an attacker, a crashed disk or a careless edit
could hand the tool. See README.md in this folder for what belongs here and how to add a case.
"""
