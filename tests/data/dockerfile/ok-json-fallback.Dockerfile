FROM busybox
# Invalid JSON falls back to the shell form, as BuildKit does.
CMD ['single', 'quotes']
CMD ["unterminated", "bracket"
CMD [ "echo", "[\"nested\"]" ]
ENTRYPOINT ["/bin/sh", "-c", "echo ${HOME} $HOME"]
RUN ["echo", "unterminated
CMD []
