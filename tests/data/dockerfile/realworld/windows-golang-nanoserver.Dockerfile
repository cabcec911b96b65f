FROM mcr.microsoft.com/windows/nanoserver:ltsc2022
SHELL ["cmd", "/S", "/C"]
USER ContainerAdministrator
ENV GOPATH C:\go
RUN setx /m PATH "%GOPATH%\bin;C:\Program Files\Go\bin;%PATH%"
USER ContainerUser
ENV GOLANG_VERSION 1.23.4
COPY --from=golang:1.23.4-windowsservercore-ltsc2022 ["C:\\Program Files\\Go","C:\\Program Files\\Go"]
RUN go version
WORKDIR $GOPATH
