# %% [markdown]
# # Smoke

# %%
def double(x):
    ### BEGIN SOLUTION multiply by two
    return 2 * x
    ### END SOLUTION

# %%
assert double(2) == 4
