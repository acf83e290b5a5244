import os
import sys

# Tests import the package from the checkout without installation side effects.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))
