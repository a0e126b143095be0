"""server/reports"""
