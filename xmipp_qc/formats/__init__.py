"""Readers of files written by other cryo-EM programs (plain text, no Scipion)."""
