"""collab/engines/local"""
