"""nerfhead.components"""
