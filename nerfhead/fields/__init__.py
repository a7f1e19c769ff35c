"""nerfhead.fields"""
