"""collab/sim"""
