"""nerfhead.models"""
