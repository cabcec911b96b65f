# only
# comments

