"""collab/log"""
