# %% [markdown]
# > **Student version.** Fill in every `NotImplementedError` stub and every *"Your answer"*
# > prompt; the self-check cell after each exercise tells you what is right or wrong.
# > Generated from `solutions/00_smoke.py`; instructors regenerate it with
# > `python -m nfcourse build-curriculum`.

# %% [markdown]
# # Smoke

# %%
def double(x):
    # YOUR CODE HERE
    raise NotImplementedError('Exercise not done yet: replace this line with your code (hint: multiply by two).')

# %%
assert double(2) == 4
