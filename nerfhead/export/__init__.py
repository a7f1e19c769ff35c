"""nerfhead.export"""
