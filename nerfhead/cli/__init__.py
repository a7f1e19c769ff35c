"""nerfhead.cli"""
