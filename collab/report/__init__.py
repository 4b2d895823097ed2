"""collab/report"""
