"""Berth contracts: the language every part speaks. Imports nothing of ours."""
