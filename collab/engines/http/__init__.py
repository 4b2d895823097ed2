"""collab/engines/http"""
