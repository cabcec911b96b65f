# escape=`

FROM mcr.microsoft.com/windows/servercore:ltsc2022
SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop';"]
ENV APP_HOME=C:\app
WORKDIR C:\app
COPY bin\ C:\app\bin\
RUN Invoke-WebRequest -Uri https://example.com/tool.zip -OutFile tool.zip ; `
    Expand-Archive tool.zip -DestinationPath C:\tools ; `
    Remove-Item tool.zip
RUN echo `$notavar
CMD C:\app\bin\app.exe --port 80
ENTRYPOINT ["C:\\app\\bin\\app.exe"]
