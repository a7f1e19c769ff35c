"""nerfhead.audio"""
