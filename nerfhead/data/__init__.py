"""nerfhead.data"""
